// map literal keys are expressions that must give Strings
print {"a": 1, "b": 2, "a": 3};
print {"x": 1, 2: "two"};
