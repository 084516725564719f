xs = [1];
para for i in range(3) {
    y = xs[i];
}
print "not reached";
