"""Event-driven containment of synthetic-dataset leaks on Azure."""
