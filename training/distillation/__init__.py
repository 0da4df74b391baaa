"""Distillation: the teacher's soft labels and transfer set, the losses, GradNorm, expert groups and schedules."""
