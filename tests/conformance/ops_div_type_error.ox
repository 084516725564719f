print div("7", 2);
