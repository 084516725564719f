print xs;
