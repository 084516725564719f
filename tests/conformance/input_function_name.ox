print "ran";
fn f() { return 1; }
