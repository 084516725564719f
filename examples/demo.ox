// A tour in one file: tasks, sequence, parallel branches and a parallel loop.
// Run it with: cargo run -p oxiida -- run examples/demo.ox

host = shell {"sh", ["-c", "printf %s \"$(uname -s)\""]};
print "running on " + host.stdout;

// Both branches start at once; the block ends when both have ended.
para {
    slow = shell {"sh", ["-c", "sleep 0.3; echo -n slow done"]};
    fast = shell {"echo", ["-n", "fast done"]};
}
print fast.stdout + ", " + slow.stdout;

// Each iteration runs concurrently, with its own `n`.
para for n in range(1, 5) {
    sq = shell {"sh", ["-c", "sleep 0.2; printf %s $(( " + str(n) + " * " + str(n) + " ))"]};
    print str(n) + " squared is " + sq.stdout;
}

words = shellpipe { "printf" "pear\napple\npear\nfig\n" | "sort" | "uniq" "-c" | "sort" "-rn" };
print words.stdout;

total = 0;
for x in [1, 2.5, 10] {
    total = total + x;
}
print "total: " + str(total);
