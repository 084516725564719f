zero_here = 0;
y = 10 / zero_here;
