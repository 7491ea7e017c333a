#include "speechlens/models/hooked_model.h"

#include <ATen/ATen.h>

namespace speechlens::models {

void HookedModel::to(std::optional<at::Device> device, std::optional<at::ScalarType> dtype) {
  visit([&](at::Tensor& t) {
    const bool floating = at::isFloatingType(t.scalar_type());
    t = t.to(device.value_or(t.device()), floating ? dtype.value_or(t.scalar_type()) : t.scalar_type());
  });
  settle_placement();
}

void HookedModel::settle_placement() {
  bool found = false;
  visit([&](at::Tensor& t) {
    if (!found && at::isFloatingType(t.scalar_type())) {
      device_ = t.device();
      dtype_ = t.scalar_type();
      found = true;
    }
  });
}

}  // namespace speechlens::models
