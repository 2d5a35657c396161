"""Getting orders in: JSON Lines read safely, validated with line-and-field errors, imported all
or nothing, and the rules for replacing an order VTEX never accepted."""
