if (true) { a = 1; } else { a = 2; }
print a;
if (false) { b = "then"; } else { b = "else"; }
print b;
n = 0;
while (n < 3) { n = n + 1; last = n * 10; }
print last;
for v in [4, 5, 6] { w = v + 1; }
print v;
print w;
{ blk = "plain"; }
seq { sq = "seq"; }
print blk + " " + sq;
x = 1;
x = "now a string";
x = [x + "!"];
print x;
