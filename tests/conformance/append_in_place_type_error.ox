// a failed `xs = xs + ...` leaves `xs` as it was
xs = [1];
xs = xs + 2;
