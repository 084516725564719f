print [1, 2,];
print len("ab",);
print range(2, 4,);
r = shell {"echo", ["-n", "ok",]};
print r.stdout;
