"""Build, publish and roll out NVIDIA precompiled GPU driver images for OpenShift clusters."""
