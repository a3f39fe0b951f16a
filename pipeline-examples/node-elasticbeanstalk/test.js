const assert = require("assert");
const greeting = require("./greeting");
assert.strictEqual(greeting("Gantry"), "Hello, Gantry!");
console.log("ok - greeting");
