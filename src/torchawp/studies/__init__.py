"""The related works of the paper's page, each on torchawp's parts: ``backdoor.py`` (Garg et
al.'s weight-space backdoor), ``transfer.py`` (Ozbulak et al.'s regional attack and transfer
between models), ``concepts.py`` (TCAV beside Soni et al.'s A-CAV)."""
