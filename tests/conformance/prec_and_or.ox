print true or false and false;
print (true or false) and false;
print false and false or true;
print false and (false or true);
print 1 < 2 and 2 < 3;
print !false and false;
print false or true and true;
