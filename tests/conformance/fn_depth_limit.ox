// more than 1,000 nested calls is an error naming the function, not a crash
fn count(n) { return 1 + count(n + 1); }
print "start";
print count(0);
