n = 3;
while (n) { n = n - 1; }
