for i in range(10) {
    if (i == 2) { continue; }
    if (i == 5) { break; }
    print i;
}
j = 0;
while (true) {
    j = j + 1;
    if (j == 2) { continue; }
    if (j > 4) { break; }
    print j * 10;
}
print j;
for a in range(3) {
    for b in range(3) {
        if (b == 1) { break; }
        print str(a) + str(b);
    }
}
