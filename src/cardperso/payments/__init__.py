"""Payment and card cryptography recipes, written over the BlockCipher interface."""
