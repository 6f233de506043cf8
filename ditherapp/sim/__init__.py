"""The PHD2 simulator and a simulated camera agent."""
