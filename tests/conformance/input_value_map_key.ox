print m;
