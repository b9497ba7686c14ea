// Wires clients -> activities -> Worker.
export {};
