r = shell {"cat", [], "line1\nline2\n"};
print r.stdout;
s = shell {"sort", [], "b\na\nc\n"};
print s.stdout;
print shell {"cat", [], ""}.stdout == "";
