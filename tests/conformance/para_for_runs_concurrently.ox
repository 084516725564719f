d = shell {"sh", ["-c", "printf %s \"$(mktemp -d)\""]}.stdout;
wait = "touch \"$1/$2\"; i=0; while [ ! -f \"$1/1\" ] || [ ! -f \"$1/2\" ] || [ ! -f \"$1/3\" ]; do sleep 0.05; i=$((i+1)); if [ $i -gt 100 ]; then exit 1; fi; done";
para for n in ["1", "2", "3"] {
    r = shell {"sh", ["-c", wait, "sh", d, n]};
    if (r.status != 0) { print "iteration " + n + " waited alone"; }
}
print "joined";
cleanup = shell {"rm", ["-rf", d]};
