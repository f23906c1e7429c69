"""Multi-task learning outside language: a vision task (digits) and a multi-goal grid world.

``digits``: digit identity with an auxiliary shape property on one shared MLP trunk.
``gridworld``: one Q-network with a shared trunk and a head per goal, checked against exact
values from value iteration. ``paired``: the seed-paired comparison both use.
"""
