print "never printed";
print later;
later = 1;
i = 0;
while (i < 2) {
    if (i == 1) { print prev; }
    prev = i;
    i = i + 1;
}
