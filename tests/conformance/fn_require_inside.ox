// foreign names are declared at the top level
fn f(x) {
    require relax;
    return x;
}
