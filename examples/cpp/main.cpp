// Smallest C++ consumer: links the installed SpeechLens and prints its version.
#include <iostream>

#include <speechlens/speechlens.h>

int main() {
  std::cout << "SpeechLens " << speechlens::version() << " on torch " << speechlens::torch_version()
            << "\n";
  return 0;
}
