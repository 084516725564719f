print "hello from oxiida";
