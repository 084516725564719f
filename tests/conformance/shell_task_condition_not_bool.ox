// The same rule as without a task: no truthiness.
while (shell {"true"}.status) { print "never"; }
