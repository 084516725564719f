// a runtime error in a function points into its body
fn label(x) {
    return "n = " + x;
}
print label("1");
print label(2);
