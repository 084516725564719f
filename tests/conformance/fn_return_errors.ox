// `return` ends a call, from the function's own flow only
fn first(xs) {
    para { a = 1; return a; }
    return nil;
}
return 0;
