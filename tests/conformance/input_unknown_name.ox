// Inputs do not make other names known.
print n + m;
