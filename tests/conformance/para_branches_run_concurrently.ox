d = shell {"sh", ["-c", "printf %s \"$(mktemp -d)\""]}.stdout;
wait = "touch \"$1/$2\"; i=0; while [ ! -f \"$1/$3\" ]; do sleep 0.05; i=$((i+1)); if [ $i -gt 100 ]; then exit 1; fi; done";
para {
    a = shell {"sh", ["-c", wait, "sh", d, "a", "b"]};
    b = shell {"sh", ["-c", wait, "sh", d, "b", "a"]};
}
print a.status + b.status;
cleanup = shell {"rm", ["-rf", d]};
