// Empty: only carries the LibTorch precompiled header.
