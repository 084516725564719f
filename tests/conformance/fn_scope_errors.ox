// a function sees its parameters and its own variables only
steps = 10;
fn run(n) {
    if (n > 0) { return steps; }
    return 0;
}
print run(1);
