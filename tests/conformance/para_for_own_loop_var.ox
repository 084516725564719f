para for i in range(5) {
    code = i * 2;
    r = shell {"sh", ["-c", "sleep 0.1; exit " + str(code)]};
    if (r.status != i * 2) { print "mixed up"; }
}
print "ok";
