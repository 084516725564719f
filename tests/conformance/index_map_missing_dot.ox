r = shell {"true"};
print r.status;
print r.no_such_key;
