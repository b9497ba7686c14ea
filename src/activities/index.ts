// Activities: everything that touches the world, built by factories that receive their clients.
export {};
