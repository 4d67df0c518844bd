// The main of the standalone-header programs: each links every header's own translation unit,
// so a header that defines something not inline (a function, a variable, a kernel that is not a
// template) fails to link, as it would in a program with two .cpp or .cu files including it.
int main() { return 0; }
