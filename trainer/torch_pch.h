// Precompiled header for the few translation units that need LibTorch (each costs ~20 s without).
#pragma once
#include <torch/torch.h>
