r = shell {"true"};
print r["status"];
print r["missing_key"];
