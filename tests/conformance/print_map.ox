r = shell {"echo", ["-n", "hi"]};
print r;
print [r.status, r];
e = shell {"sh", ["-c", "printf oops >&2; exit 2"]};
print e;
