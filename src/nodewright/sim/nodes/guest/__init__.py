"""Programs that run inside a simulated node (standard library only): init, service, power, cloud-init."""
