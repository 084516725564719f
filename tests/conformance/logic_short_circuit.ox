zero = 0;
print false and 1 / zero > 0;
print true or 1 / zero > 0;
print true and false;
print false or false;
print true and true;
print !true;
print !!true;
print !(1 > 2);
