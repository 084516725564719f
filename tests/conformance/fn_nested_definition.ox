// `fn` only at the top level
if (true) {
    fn inner() { return 1; }
}
