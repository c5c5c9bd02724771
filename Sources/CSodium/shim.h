#ifndef GATEWAY_CSODIUM_SHIM_H
#define GATEWAY_CSODIUM_SHIM_H
#include <sodium.h>
#endif
