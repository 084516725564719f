print n;
