zero = 0;
para {
    seq { r = shell {"sleep", ["30"]}; print "not reached"; }
    seq { w = shell {"sh", ["-c", "sleep 0.2"]}; bad = 1 / zero; }
}
print "not reached either";
