#include <gtest/gtest.h>

#include "speechlens/speechlens.h"

TEST(Version, ReportsLibraryAndTorch) {
  EXPECT_EQ(speechlens::version(), "0.1.0");
  EXPECT_FALSE(speechlens::torch_version().empty());
}
