base = 10;
para {
    a = base + 1;
    b = base * 2;
    seq { c = base - 1; c = c * 2; }
    seq { t = 1; u = t + 1; }
    seq { t = 5; v = t * 2; }
    slow = shell {"sh", ["-c", "sleep 0.3; printf late"]};
}
print a;
print b;
print c;
print u + v;
print slow.stdout;
