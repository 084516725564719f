print el;
