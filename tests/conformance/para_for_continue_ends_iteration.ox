para for i in range(3) {
    if (i >= 0) { continue; }
    print "never";
}
print "done";
