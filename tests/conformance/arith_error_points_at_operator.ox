x = 1;
print x * "no";
